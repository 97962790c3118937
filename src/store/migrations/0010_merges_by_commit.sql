-- Issue 15, "a dashboard worth looking at": the Insights page finds when each deployed
-- commit was merged, by repository and commit. The key is by pull request, so without
-- this index each lookup would read every merge of the repository.
CREATE INDEX merges_by_commit ON merges (repository, sha, recorded_at);
