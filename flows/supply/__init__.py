"""Supply chain: vendor reviews, the inventory reorder and the purchase approvals it starts."""
