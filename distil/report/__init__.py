"""What a person reads: the leaderboard, its headline and notes, the html report, the export."""
