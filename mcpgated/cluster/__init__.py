"""
Keeping several gateway processes and nodes in step: what changed
(L{changes}), how the news travels (feeds), and what a process reloads
when it hears of it (L{follower}).
"""
