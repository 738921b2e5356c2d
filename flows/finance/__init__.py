"""Finance: budgets, actuals and the monthly budget variance."""
