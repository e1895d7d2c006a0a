"""Rules: YAML schema, matching, and the engine that turns story changes into rule hits."""
