"""The modules of eval/run (see eval/README.md and the driver's own comment):

  context   the run's context, the two failure kinds, running commands
  recipes   cases files, recipes, flavours and per-case programs
  source    Debian source packages (apt) and local source trees
  tree      the cached build tree of a package version, its state and its build
  program   the program under update and its setup processes, always stopped
  steps     one case: create, apply, trigger, view, undo, and flavours
  report    saved results, report.md and report.json
"""
