"""Maintenance windows: when a run may start, whether it fits, how it is scheduled.

Pure logic with the clock passed in (`clock.Now`: a `Callable[[], datetime]` returning an aware
UTC time): `cron` parses the 5-field expressions, `zones` places a local wall time in a time zone
(with its daylight-saving gaps and folds), `occurrences` lists a runbook's windows and where
"now" is relative to them, `figures` turns the preflight's measurements into the run's phases,
`fit` decides whether they fit the time left, `horizon` judges the donor's binary log retention,
`wait` waits for a window's start (holding the runbook's `lock`), `schedule` writes the systemd
units and the crontab line that start a run in each window. The steps are in
`resync.steps.window`, the commands in `resync.cli.window` and `resync.cli.schedule`.
"""
