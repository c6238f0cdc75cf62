"""Routing: the decision (hot path) and, later, the race, breakers and hedging."""
