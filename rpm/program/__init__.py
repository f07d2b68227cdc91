"""Program operations: adherence, billing periods, time logs."""
