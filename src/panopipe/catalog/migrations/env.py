"""Alembic environment. panopipe passes the connection in ``config.attributes["connection"]``."""

from alembic import context

from panopipe.catalog.schema import metadata
from panopipe.catalog.spatial import include_object

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    include_object=include_object,
)
with context.begin_transaction():
    context.run_migrations()
