"""leadscore store package."""
