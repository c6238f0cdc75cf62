"""Quality guardrails: gold-set regression and progressive rollout."""
