"""Care teams: staff, teams, on-call shifts."""
