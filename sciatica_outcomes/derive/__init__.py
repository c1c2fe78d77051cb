"""derive stage (see DESIGN.md)."""
