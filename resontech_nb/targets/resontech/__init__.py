"""The resontech target: shards and job files to S3, the job to the platform's REST API."""
