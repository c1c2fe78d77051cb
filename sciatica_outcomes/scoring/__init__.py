"""scoring stage (see DESIGN.md)."""
