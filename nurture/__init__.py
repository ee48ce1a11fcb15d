"""leadscore nurture package."""
