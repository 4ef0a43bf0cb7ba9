package outbox

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// Violation names one place where an event's data breaks its type's schema.
type Violation struct {
	// Field is an RFC 6901 pointer into the request body ("/data/amount").
	Field   string
	Message string
}

// SchemaError lists how data breaks its event type's schema.
type SchemaError struct {
	Violations []Violation
}

func (e *SchemaError) Error() string {
	parts := make([]string, len(e.Violations))
	for i, v := range e.Violations {
		parts[i] = v.Field + ": " + v.Message
	}
	return "data does not match the event type's schema: " + strings.Join(parts, "; ")
}

// maxViolations bounds what one error reports.
const maxViolations = 10

var printer = message.NewPrinter(language.English)

// refusingLoader refuses every external reference, so a user's schema cannot make
// the server read local files (file://) or fetch URLs.
type refusingLoader struct{}

func (refusingLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("references outside the schema are not allowed (%s)", url)
}

// CompileSchema compiles a JSON Schema (draft 2020-12 unless the schema's
// $schema says otherwise). Only references within the document resolve.
func CompileSchema(raw json.RawMessage) (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("schema is not JSON: %w", err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.UseLoader(refusingLoader{})
	const loc = "urn:ecs:event-type-schema"
	if err := c.AddResource(loc, doc); err != nil {
		return nil, fmt.Errorf("invalid schema: %w", err)
	}
	s, err := c.Compile(loc)
	if err != nil {
		return nil, fmt.Errorf("invalid schema: %w", err)
	}
	return s, nil
}

// ValidateData checks data against s. prefix is the pointer of data within the
// request ("/data", "/examples/2").
func ValidateData(s *jsonschema.Schema, data json.RawMessage, prefix string) error {
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return &SchemaError{Violations: []Violation{{Field: prefix, Message: "is not JSON"}}}
	}
	err = s.Validate(inst)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return fmt.Errorf("outbox: validate: %w", err)
	}
	// The leaves of the error tree say the most: "missing property 'sku'" at
	// the element that lacks it, not "validation failed" at the root.
	seen := map[string]bool{}
	var out []Violation
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) > 0 {
			for _, c := range e.Causes {
				walk(c)
			}
			return
		}
		field := prefix
		for _, tok := range e.InstanceLocation {
			field += "/" + strings.NewReplacer("~", "~0", "/", "~1").Replace(tok)
		}
		msg := e.ErrorKind.LocalizedString(printer)
		if !seen[field+msg] {
			seen[field+msg] = true
			out = append(out, Violation{Field: field, Message: msg})
		}
	}
	walk(ve)
	if len(out) == 0 {
		out = []Violation{{Field: prefix, Message: ve.Error()}}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Field < out[j].Field })
	if len(out) > maxViolations {
		out = out[:maxViolations]
	}
	return &SchemaError{Violations: out}
}
