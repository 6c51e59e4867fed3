"""Library of the reporter plugins (registers nothing): the leaderboard as display grids, published
reference sets, and measured backbone profiles for the speed/accuracy table."""
