"""Running a plan: the engine, steps, COPY/ADD, build context, step cache and build memo.

- `pipeline` (`minibuild build` end to end) → `engine` (stages, steps through the cache) with
  `steps` (RUN/COPY/ADD/WORKDIR prepared), `layermaker` (a step's writes → a stored layer),
  `cache` (step cache), `mountsetup` + `cachemounts` (RUN --mount), `workdir` (WORKDIR's
  dir); `ports` types what they are given (runner, store, step cache, reporter).
- COPY/ADD: `context` (sources resolved and hashed) with `treewalk` and `hashcache`; `copier`
  (destination rules, owners, modes) with `rootwriter` (writing into the image root) and
  `addarchive` (ADD's local tars); `reuse` (a rebuilt COPY links its unchanged files).
- The build memo: `memo` (key, lookup, record; standard library only, read at start-up),
  `witness` and `sightings` (what a real build tells it), `fsstate`; `parsecache`.
"""
