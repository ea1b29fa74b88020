"""Jobs: ``python -m tlcore`` processes, the slots that cap how many run at once, and the job folder."""
