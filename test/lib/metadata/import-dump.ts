// Comparable dumps of what an import wrote, shared by the import tests that compare two databases.
import type {Db} from '../../../src/lib/metadata/db.js'
import type {ImportResult} from '../../../src/lib/metadata/import.js'

/**
 * Every registry table with surrogate ids replaced by natural keys (repository path, digests, media type
 * names), the tables of unresolved references included: comparable across two databases.
 */
export async function logicalDump(db: Db): Promise<Record<string, string[]>> {
  const queries: Record<string, string> = {
    namespaces: `SELECT name FROM top_level_namespaces`,
    repositories: `SELECT r.path || ' ' || n.name FROM repositories r JOIN top_level_namespaces n ON n.id = r.top_level_namespace_id`,
    media_types: `SELECT media_type FROM media_types`,
    // a referenced blob storage lacks gets the time of its import: the same only as 'during the import'
    blobs: `SELECT concat_ws(' ', b.digest, b.size, mt.media_type,
                    CASE WHEN b.created_at >= (SELECT min(started_at) FROM regops_jobs) THEN 'during the import' ELSE b.created_at::text END)
              FROM blobs b LEFT JOIN media_types mt ON mt.id = b.media_type_id`,
    repository_blobs: `SELECT concat_ws(' ', r.path, rb.blob_digest, rb.created_at) FROM repository_blobs rb JOIN repositories r ON r.id = rb.repository_id`,
    manifests: `SELECT concat_ws(' ', r.path, m.digest, mt.media_type, m.schema_version, md5(m.payload), m.configuration_blob_digest, cmt.media_type, m.subject_digest, m.created_at)
                  FROM manifests m JOIN repositories r ON r.id = m.repository_id JOIN media_types mt ON mt.id = m.media_type_id
                  LEFT JOIN media_types cmt ON cmt.id = m.configuration_media_type_id`,
    manifest_references: `SELECT concat_ws(' ', r.path, p.digest, c.digest) FROM manifest_references mr JOIN repositories r ON r.id = mr.repository_id
                  JOIN manifests p ON p.id = mr.parent_id AND p.repository_id = mr.repository_id JOIN manifests c ON c.id = mr.child_id AND c.repository_id = mr.repository_id`,
    dangling_manifest_references: `SELECT concat_ws(' ', r.path, p.digest, d.child_digest) FROM dangling_manifest_references d JOIN repositories r ON r.id = d.repository_id
                  JOIN manifests p ON p.id = d.parent_id AND p.repository_id = d.repository_id`,
    layers: `SELECT concat_ws(' ', r.path, m.digest, l.position, l.digest, l.size, mt.media_type) FROM layers l JOIN repositories r ON r.id = l.repository_id
                  JOIN manifests m ON m.id = l.manifest_id AND m.repository_id = l.repository_id JOIN media_types mt ON mt.id = l.media_type_id`,
    tags: `SELECT concat_ws(' ', r.path, t.name, m.digest, t.created_at, t.updated_at IS NULL) FROM tags t JOIN repositories r ON r.id = t.repository_id
                  JOIN manifests m ON m.id = t.manifest_id AND m.repository_id = t.repository_id`,
    unreadable_revisions: `SELECT concat_ws(' ', r.path, u.key, u.digest, u.problem, u.message, u.revision_modified) FROM unreadable_revisions u
                  JOIN repositories r ON r.id = u.repository_id`,
  }
  const out: Record<string, string[]> = {}
  for (const [name, sql] of Object.entries(queries)) {
    const r = await db.query<{line: string}>(`SELECT line FROM (${sql}) AS x(line) ORDER BY 1`)
    out[name] = r.rows.map((row) => row.line)
  }
  return out
}

/** What a run reports, without what differs between runs (job id, group, duration). */
export function outcome(result: ImportResult) {
  const {manifests, blobs, layers, tags, repositories, repositoryBlobs, references, written, problemCount, failed} =
    result
  const problems = result.problems.map((p) => `${p.kind} ${p.key}`).sort()
  return {
    manifests,
    blobs,
    layers,
    tags,
    repositories,
    repositoryBlobs,
    references,
    written,
    problemCount,
    failed,
    problems,
  }
}
