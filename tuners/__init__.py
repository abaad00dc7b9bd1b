"""Ray Tune searches over penalty weights and stage schedules."""
