"""State that outlives a request: jobs, the spend ledger, budgets (embedded SQLite today)."""
