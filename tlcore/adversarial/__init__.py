"""Adversarial examples: attacks, robustness curves and hardening."""
