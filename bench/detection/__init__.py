"""Detection quality: a labelled synthetic corpus in NAB layout, the NAB scorer, and a runner
that streams a corpus through the daemon's replay path and scores the alerts it emits."""
