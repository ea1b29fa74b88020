"""A user's lab: workspace, projects, run history, checklists, leaderboard, bench, disk clean-up and server sessions."""
