"""leadscore stages package."""
