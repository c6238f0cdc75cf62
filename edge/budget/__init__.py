"""Cost control: prices and usage, key budgets with reservations, the async job queue."""
