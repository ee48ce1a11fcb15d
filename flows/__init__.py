"""leadscore flows package: Prefect flows and tasks, deployments and the CLI."""
