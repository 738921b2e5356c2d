"""Continuity: emergency drills and continuity plan reviews."""
