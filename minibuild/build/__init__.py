"""Running a plan: the engine, steps, COPY/ADD, build context, step cache and build memo."""
