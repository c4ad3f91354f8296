"""A run's folder and what outlives the process: its one owner (output: lock, run.json, resume point), what it
writes there (journal), detached runs and following them (workers), the history of runs, the PNG report."""
