"""The PPO trainer (`ppo.py`), its slots (`slots.py`), networks, GAE and the sharded runner."""
