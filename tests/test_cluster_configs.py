"""The shipped cluster configs: the launcher YAML against the schema in the installed `ray`, the
KubeRay RayJob against what docs/cluster.md documents, token auth on every node."""

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml
from packaging.requirements import Requirement

from tests.conftest import ROOT

CLUSTER = ROOT / "cluster"
RAY_SCHEMA = Path(ray.__file__).parent / "autoscaler" / "ray-schema.json"


def _readme_commands():
    """The shell code blocks of docs/cluster.md (where the README's cluster section moved) with backslash
    continuations joined, one command per line."""
    text = (ROOT / "docs" / "cluster.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    return [" ".join(line.split("#", 1)[0].split()) for line in lines if line.strip()]


def _pin(commands, name):
    """The `name==X` pins in a list of shell commands, e.g. {'2.13.0'} for torch."""
    return set(re.findall(rf"\b{re.escape(name)}(?:\[[^\]]*\])?==([\w.]+)", " ".join(commands)))


def _pyproject_requirement(name):
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return next(Requirement(d) for d in deps if Requirement(d).name == name)


@pytest.fixture(scope="module")
def launcher():
    return yaml.safe_load((CLUSTER / "cluster.yaml").read_text())


@pytest.fixture(scope="module")
def rayjob():
    docs = list(yaml.safe_load_all((CLUSTER / "rayjob.yaml").read_text()))
    return next(d for d in docs if d["kind"] == "RayJob")


def test_launcher_yaml_validates_against_rays_schema(launcher):
    from ray.autoscaler._private.util import prepare_config, validate_config

    schema = json.loads(RAY_SCHEMA.read_text())
    jsonschema.validate(launcher, schema)
    validate_config(prepare_config(copy.deepcopy(launcher)))  # what `ray up` checks before any cloud call
    broken = {**launcher, "min_workers": 0}  # a top-level key the launcher does not know
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_launcher_starts_every_node_with_token_auth_and_a_local_dashboard(launcher):
    head, = [c for c in launcher["head_start_ray_commands"] if "ray start" in c]
    worker, = [c for c in launcher["worker_start_ray_commands"] if "ray start" in c]
    assert "RAY_AUTH_MODE=token ray start --head" in head and "--dashboard-host=127.0.0.1" in head
    assert "RAY_AUTH_MODE=token ray start --address" in worker
    assert "0.0.0.0" not in yaml.safe_dump(launcher)
    assert launcher["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"  # the client's token on every node


def test_launcher_uploads_the_project_and_pins_torch_and_ray(launcher):
    assert launcher["file_mounts"]["~/distil-sweep"] == "."
    gpu = launcher["available_node_types"]["gpu_worker"]
    assert gpu["min_workers"] == 0 and gpu["max_workers"] >= 1
    for commands in (launcher["head_setup_commands"], launcher["worker_setup_commands"]):
        assert any("-e ~/distil-sweep" in c for c in commands)
        torch, ray_pin = _pin(commands, "torch"), _pin(commands, "ray")
        assert torch == {"2.13.0"} and _pyproject_requirement("torch").specifier.contains("2.13.0")
        # the nodes run the Ray the client here runs (`ray up`/`ray job submit` need the same version)
        assert ray_pin == {ray.__version__} and _pyproject_requirement("ray").specifier.contains(ray.__version__)
    assert launcher["docker"]["image"].startswith(f"rayproject/ray:{ray.__version__}-")


def test_rayjob_names_the_documented_entrypoint_and_image_with_token_auth(rayjob):
    commands = _readme_commands()
    assert rayjob["apiVersion"] == "ray.io/v1"
    spec = rayjob["spec"]
    entrypoint = " ".join(spec["entrypoint"].split())
    assert entrypoint.startswith("python run_sweep.py sweeps/distilbert-base.yaml --output /shared/")
    assert (ROOT / entrypoint.split()[2]).is_file()
    assert any(c.endswith(entrypoint) for c in commands), "README submits the same sweep the RayJob runs"
    built = {m.group(1) for c in commands if (m := re.search(r"docker build -f cluster/Dockerfile -t (\S+) \.", c))}
    cluster = spec["rayClusterSpec"]
    groups = [cluster["headGroupSpec"]] + cluster["workerGroupSpecs"]
    images = {c["image"] for g in groups for c in g["template"]["spec"]["containers"]}
    assert len(built) == 1 and images == built
    assert any(c.startswith("kubectl apply -f cluster/rayjob.yaml") for c in commands)
    assert re.search(rf"^FROM rayproject/ray:{re.escape(ray.__version__)}-", (CLUSTER / "Dockerfile").read_text(), re.M)
    assert cluster["rayVersion"] == ray.__version__
    # token auth from a Kubernetes Secret the README creates from the CLI's token
    auth = cluster["authOptions"]
    assert auth["mode"] == "token"
    secret = f"kubectl create secret generic {auth['secretName']} --from-literal=auth_token="
    assert any(c.startswith(secret) for c in commands)
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert runtime_env["working_dir"] and "/shared/" in runtime_env["env_vars"]["HF_HOME"]
    gpu = [g for g in cluster["workerGroupSpecs"]
           if "nvidia.com/gpu" in g["template"]["spec"]["containers"][0]["resources"]["limits"]]
    assert gpu and all(g["minReplicas"] == 0 and g["maxReplicas"] >= 1 for g in gpu)


def test_readme_starts_the_local_head_with_the_tested_script():
    commands = _readme_commands()
    assert any(c.startswith("cluster/local_head.sh") for c in commands)
    assert not any(re.match(r"ray start\b", c) for c in commands), "start Ray through cluster/local_head.sh or ray up"
    assert not any("RAY_AUTH_MODE=disabled" in c or "dashboard-host=0.0.0.0" in c for c in commands)
