"""leadscore examples package."""
