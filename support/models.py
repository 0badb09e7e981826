# No models of its own: the module is here because Django sends post_migrate (which sets
# up the roles, support.apps) only to apps that have one.
