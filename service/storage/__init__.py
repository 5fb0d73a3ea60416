"""Tools that work on the service's database as a whole, one subpackage per backend."""
