"""The default sampler (`search.sampler.name: tpe`): quasi-random startup, then TPE on the highest
fidelity that has enough scores, so that every trial counts, stopped ones included.

Optuna's plain TPESampler, as the sweep used it, learned from one trial: with early stopping most
trials end PRUNED, and TPE ranks a pruned trial below every finished one, so pruned trials only
ever fill its bad set; its good set is ceil(0.1 n) = 1 trial up to n = 10; its startup draws were
independent uniform draws that can miss a layer rule. And with synchronous successive halving
(distil.search.halving) no trial has finished while the candidates are proposed: a sampler that
looks only at COMPLETE and PRUNED trials would propose every one of them at random.

`RungTPESampler` keeps Optuna's TPE (Bergstra et al. 2011; multivariate, Falkner et al. 2018) and
changes what it is shown and when:

* Startup (trial numbers below `n_startup_trials`, or while too few scores exist): a scrambled
  Halton point (scipy.stats.qmc; Owen 2017) over the float parameters, one index per trial number,
  and for each categorical parameter a least-used choice so far (random among ties): with at
  least as many startup trials as choices, every layer rule is tried.
* Then, BOHB-style (Falkner et al. 2018, "BOHB: Robust and Efficient Hyperparameter Optimization
  at Scale", §3.1): TPE models the highest fidelity with at least max(3, n_startup_trials) scores:
  the final objective of finished trials if enough have finished, else the proxy score at the
  highest rung that enough trials reached (Optuna's intermediate values, step = rung; running,
  paused, stopped and finished trials alike). Every trial at that fidelity counts on the same
  terms, whatever became of it later. TPE runs on an in-memory study holding one COMPLETE trial per
  scored trial, valued by its score at that fidelity.
* The good set holds max(2, ceil(0.15 n)) of the n modelled trials (BOHB's top 15 %), so never one.

`proposals[trial.number]` says who proposed each trial (`qmc (startup)`; `qmc (few scores)` past
the startup trials while too few have a score; `tpe (rung 0)`, `tpe (final)`, ...);
distil.search.tuner.Searcher stores it as the user attr `proposed_by`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState
from scipy.stats import qmc

MIN_POINTS = 3  # a good set of 2 and a bad set of at least 1


def good_set_size(n: int) -> int:
    """TPE's gamma: how many of n modelled trials form the good set: max(2, ceil(0.15 n)), at most
    25 (Optuna's cap) and at most n. 0.15 is BOHB's `top_n_percent` (Falkner et al. 2018)."""
    return min(n, 25, max(2, math.ceil(0.15 * n)))


class RungTPESampler(optuna.samplers.BaseSampler):
    """Quasi-random startup, then TPE on the highest fidelity with enough scores (module docstring).

    space: the searched parameters as Optuna distributions (name -> distribution), known up front
        so that a startup point covers all of them jointly.
    n_startup_trials: trial numbers below this are startup draws (enqueued points included).
    seed: makes the startup points and TPE's draws reproducible (and the same after a resume).
    multivariate, group: as TPESampler's (the joint model, and conditional parameter groups).
    """

    def __init__(self, space: Mapping[str, BaseDistribution], n_startup_trials: int, seed: int | None = None,
                 multivariate: bool = True, group: bool = False):
        self._space = dict(space)
        self._n_startup, self._seed, self._multivariate = n_startup_trials, seed, multivariate
        self.min_points = max(MIN_POINTS, n_startup_trials)
        with warnings.catch_warnings():
            # `gamma` is deprecated since Optuna 4.9 (removal planned for 6.0) but still the way to size
            # the good set; its FutureWarning would repeat on every sweep.
            warnings.simplefilter("ignore", FutureWarning)
            self._tpe = optuna.samplers.TPESampler(
                n_startup_trials=0, multivariate=multivariate, group=group and multivariate, seed=seed,
                gamma=good_set_size, constant_liar=False)
        self._random = optuna.samplers.RandomSampler(seed=seed)
        self.proposals: dict[int, str] = {}

    def infer_relative_search_space(self, study, trial) -> dict[str, BaseDistribution]:
        return {n: d for n, d in self._space.items() if not d.single()}

    def sample_relative(self, study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]) -> dict:
        if not search_space:
            return {}
        view, level = self.model_view(study, trial)
        if trial.number < self._n_startup or view is None:
            # Past the startup trials with too few scores yet (trials still running): more of the sequence.
            self.proposals[trial.number] = "qmc (startup)" if trial.number < self._n_startup else "qmc (few scores)"
            return self.startup_point(study, trial, search_space)
        self.proposals[trial.number] = f"tpe ({level})"
        if self._multivariate:
            space = self._tpe.infer_relative_search_space(view, trial)  # also sets up `group`
            return self._tpe.sample_relative(view, trial, {n: d for n, d in search_space.items() if n in space})
        return {n: self._tpe.sample_independent(view, trial, n, d) for n, d in search_space.items()}

    def sample_independent(self, study, trial, param_name: str, param_distribution: BaseDistribution):
        # Only a parameter outside the declared space gets here (none in a sweep's fixed space).
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    # ------------------------------------------------------------------ what TPE is shown
    def model_view(self, study, trial: FrozenTrial) -> tuple[optuna.Study | None, str | None]:
        """(an in-memory study of one COMPLETE trial per trial scored at the chosen fidelity, its
        name: `final` or `rung k`), or (None, None) while no fidelity has `min_points` scores."""
        others = [t for t in study.get_trials(deepcopy=False)
                  if t.number != trial.number and t.state != TrialState.FAIL and set(self._space) <= set(t.params)]
        levels: list[tuple[str, list[tuple[FrozenTrial, list[float]]]]] = [
            ("final", [(t, list(t.values)) for t in others if t.state == TrialState.COMPLETE])]
        if len(study.directions) == 1:  # rung scores rank one objective (early stopping needs one)
            rungs = sorted({k for t in others for k in t.intermediate_values}, reverse=True)
            levels += [(f"rung {k}", [(t, [t.intermediate_values[k]]) for t in others if k in t.intermediate_values])
                       for k in rungs]
        for name, points in levels:
            points = [(t, v) for t, v in points if all(math.isfinite(x) for x in v)]
            if len(points) >= self.min_points:
                storage = optuna.storages.InMemoryStorage()  # not create_study: it logs a line per call
                storage.create_new_study(directions=list(study.directions), study_name="model-view")
                view = optuna.Study(study_name="model-view", storage=storage)
                view.add_trials([optuna.trial.create_trial(params={n: t.params[n] for n in self._space},
                                                           distributions=self._space, values=v)
                                 for t, v in points])
                return view, name
        return None, None

    # ------------------------------------------------------------------ startup
    def startup_point(self, study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]) -> dict:
        """The startup draw of `trial`: Halton point number `trial.number` over the float and int
        parameters (sorted by name), and the least-used choice so far of each categorical one."""
        numeric = sorted(n for n, d in search_space.items() if not isinstance(d, CategoricalDistribution))
        params = {}
        if numeric:
            u = qmc.Halton(d=len(numeric), scramble=True, seed=self._seed).random(trial.number + 1)[-1]
            params = {n: _scale(search_space[n], x) for n, x in zip(numeric, u)}
        rng = np.random.default_rng(None if self._seed is None else [self._seed, trial.number])
        chosen = [t.params or t.system_attrs.get("fixed_params", {})
                  for t in study.get_trials(deepcopy=False) if t.number != trial.number]
        for name in sorted(set(search_space) - set(numeric)):
            choices = search_space[name].choices
            used = [sum(p.get(name) == c for p in chosen) for c in choices]
            least = [c for c, k in zip(choices, used) if k == min(used)]
            params[name] = least[rng.integers(len(least))]
        return params


def _scale(d: BaseDistribution, u: float):
    """A unit-interval coordinate u mapped onto distribution d (log-uniform for log ranges)."""
    if isinstance(d, FloatDistribution):
        if d.log:
            x = math.exp(math.log(d.low) + u * (math.log(d.high) - math.log(d.low)))
        else:
            x = d.low + u * (d.high - d.low)
        if d.step is not None:
            x = d.low + round((x - d.low) / d.step) * d.step
        return min(max(x, d.low), d.high)
    if isinstance(d, IntDistribution):
        lo, hi = (math.log(d.low), math.log(d.high + 1)) if d.log else (d.low, d.high + 1)
        x = math.exp(lo + u * (hi - lo)) if d.log else lo + u * (hi - lo)
        x = d.low + int((int(x) - d.low) // d.step) * d.step
        return min(max(x, d.low), d.high)
    raise TypeError(f"no quasi-random draw for {d!r}")
