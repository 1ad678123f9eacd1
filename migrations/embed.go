// Package migrations holds the versioned schema of the event store, one
// directory per dialect (sqlite, mysql, postgres). Files are named
// NNNN_description.sql and applied in order; "{{prefix}}" stands for the
// validated table prefix. Statements are separated by ";" at the end of a
// line; inside a $$-quoted function body they are not split.
package migrations

import "embed"

// FS holds every dialect's migration files.
//
//go:embed sqlite/*.sql mysql/*.sql postgres/*.sql
var FS embed.FS
