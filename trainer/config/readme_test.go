package config

import (
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// TestReadmeDocumentsEveryKey keeps the README's config reference honest: every key a
// config can hold has a row, no row names a key that does not exist, and each row's
// default is the one Default gives.
func TestReadmeDocumentsEveryKey(t *testing.T) {
	src, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{} // key -> default cell
	for _, line := range strings.Split(string(src), "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 5 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`") {
			continue
		}
		key := strings.Trim(strings.TrimSpace(cells[1]), "`")
		if strings.ContainsAny(key, " =") {
			continue // a row of another table
		}
		rows[key] = strings.Trim(strings.TrimSpace(cells[2]), "`")
	}
	want := map[string]string{}
	leaves(reflect.ValueOf(Default()), "", want)
	for key, def := range want {
		got, ok := rows[key]
		switch {
		case !ok:
			t.Errorf("README has no row for %s (default %s)", key, def)
		case key == "name":
			// Defaults to the config file's name, which Default cannot know.
		case strings.Contains(key, "[]"):
			// List items have no defaults of their own.
		case got != def:
			t.Errorf("README says %s defaults to %q; Default() has %q", key, got, def)
		}
	}
	for key := range rows {
		if _, ok := want[key]; !ok {
			t.Errorf("README documents %s, which is not a config key", key)
		}
	}
}

// leaves lists every key path under v with its value written as in the README.
func leaves(v reflect.Value, key string, out map[string]string) {
	switch {
	case v.Kind() == reflect.Struct:
		for i := range v.NumField() {
			if n := yamlName(v.Type().Field(i)); n != "" {
				leaves(v.Field(i), join(key, n), out)
			}
		}
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Struct:
		out[key] = "[]"
		leaves(reflect.New(v.Type().Elem()).Elem(), key+"[]", out)
	default:
		out[key] = format(v)
	}
}

func format(v reflect.Value) string {
	switch v.Kind() {
	case reflect.Float64:
		return strconv.FormatFloat(v.Float(), 'g', -1, 64)
	case reflect.String:
		if v.String() == "" {
			return `""`
		}
	case reflect.Array:
		items := make([]string, v.Len())
		for i := range items {
			items[i] = format(v.Index(i))
		}
		return "[" + strings.Join(items, ", ") + "]"
	}
	return fmt.Sprint(v.Interface())
}
