"""Backbone builders; importing a module registers its backbones."""
