"""leadscore flows package."""
