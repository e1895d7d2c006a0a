"""Storage: models, engine set-up and every query (the only package that speaks SQL)."""
