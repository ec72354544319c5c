-- ARGV: metric. Returns the budget's status (budget_common's `status`).
return status(ARGV[1], now_us())
