"""The scaled mode (DESIGN section 8): PostgreSQL, Procrastinate workers, many replicas."""
