package index

import "strings"

// ODataString is s as an OData string literal: quoted, every quote
// doubled, so that no value can end the literal (HAZARDS 7). Every $filter
// kvaudit builds quotes its values with this one function.
func ODataString(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
