"""fm_receiver package."""
