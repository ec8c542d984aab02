/* tools/schema.h — JSON Schema validation (the 2020-12 subset MCP servers send)
 * for tool arguments (SPEC §7: 422 when arguments fail the tool's schema).
 *
 * No Debian -dev package validates JSON Schema in C, so this module does.
 * Keywords checked:
 *   type (a name or a union array), enum, const, allOf, anyOf, oneOf, not,
 *   properties, required, additionalProperties (bool or schema),
 *   patternProperties, items (schema; the draft-07 array form is read as
 *   prefixItems), prefixItems, minItems, maxItems, minimum, maximum,
 *   exclusiveMinimum, exclusiveMaximum (number, or draft-04 boolean),
 *   multipleOf, minLength, maxLength (Unicode code points), pattern (POSIX
 *   ERE, see schema.c), $ref to "#", "#/$defs/..." or "#/definitions/...".
 * Other keywords (format, title, description, if/then/else, ...) are
 * annotations here: they never refuse a value.  "integer" accepts 1.0.
 *
 * Bounded: a schema nested deeper than SCHEMA_MAX_DEPTH, a $ref that is not
 * local or names nothing, a $ref chain that loops, a pattern that does not
 * compile is refused by schema_compile (never a crash).  While validating,
 * subschema applications nest at most SCHEMA_MAX_DEPTH deep (which stops
 * recursion through $ref) and number at most SCHEMA_MAX_STEPS per call
 * (which stops anyOf blow-ups).
 *
 * A compiled schema is immutable: any thread may validate with it at once.
 */
#ifndef AGD_TOOLS_SCHEMA_H
#define AGD_TOOLS_SCHEMA_H

#include <jansson.h>
#include <stddef.h>

#define SCHEMA_MAX_DEPTH 64
#define SCHEMA_MAX_STEPS 100000

typedef struct schema schema_t;

/* Compile `doc` (an object or a boolean; a reference is taken, the caller must
 * not change it afterwards).  Returns 0 with *out, or AGD_EVALIDATION with a
 * message in err naming the bad spot (e.g. "#/properties/x/pattern: ..."). */
int schema_compile(const json_t *doc, schema_t **out, char *err, size_t errcap);
/* schema_free(NULL) is a no-op. */
void schema_free(schema_t *s);
/* The schema document (borrowed, valid while s lives; do not change it). */
json_t *schema_doc(const schema_t *s);

/* Validate `inst`.  Returns 0, or AGD_EVALIDATION with the failing value's path
 * in `path` (starting with `root`, e.g. "arguments.items[2].name") and what is
 * wrong in `msg` (e.g. "must be a string").  path/msg may be NULL. */
int schema_validate(const schema_t *s, const json_t *inst, const char *root, char *path, size_t pathcap, char *msg,
                    size_t msgcap);

#endif
