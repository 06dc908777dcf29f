package client

import (
	"context"
	"fmt"
	"sort"
	"strings"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	sdkclient "go.temporal.io/sdk/client"

	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/workflows/devserver"
)

// RegisterSearchAttributes makes sure that namespace has herd's search attributes
// (devserver.SearchAttributes), which its workflows set: herd's embedded server registers
// them itself, another cluster may not have them, and a workflow that sets one the
// cluster does not know fails its workflow tasks. Missing ones are added through the
// operator service; where that is refused (a cluster whose operators keep that right,
// Temporal Cloud with a key that is not the namespace admin's) the user error lists the
// commands that register them. One registered with another type is a user error too.
func RegisterSearchAttributes(ctx context.Context, c sdkclient.Client, namespace string) error {
	if namespace == "" {
		namespace = defaultNamespace
	}
	op := c.OperatorService()
	have, err := op.ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
	if err != nil {
		return searchAttributesError(namespace, devserver.SearchAttributes, "listing them", err)
	}
	missing := map[string]enumspb.IndexedValueType{}
	for name, want := range devserver.SearchAttributes {
		got, ok := have.GetCustomAttributes()[name]
		switch {
		case !ok:
			missing[name] = want
		case got != want:
			return usererr.New("namespace "+namespace, "search attribute %s is registered as %s, but herd sets it as %s; "+
				"remove it (`temporal operator search-attribute remove --namespace %s --name %s`) and herd registers it anew, or use another namespace",
				name, got, want, namespace, name)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	_, err = op.AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{Namespace: namespace, SearchAttributes: missing})
	if err != nil {
		return searchAttributesError(namespace, missing, "registering them", err)
	}
	return nil
}

// searchAttributesError says that the search attributes attrs of namespace could not be
// registered while doing what, and gives the commands that register them.
func searchAttributesError(namespace string, attrs map[string]enumspb.IndexedValueType, doing string, err error) error {
	names := make([]string, 0, len(attrs))
	for name := range attrs {
		names = append(names, name)
	}
	sort.Strings(names)
	cmds := make([]string, len(names))
	for i, name := range names {
		cmds[i] = fmt.Sprintf("`temporal operator search-attribute create --namespace %s --name %s --type %s`", namespace, name, attrs[name])
	}
	return usererr.New("namespace "+namespace, "herd's search attributes %s are not registered, and %s failed: %v; "+
		"have an operator of the cluster run %s (on Temporal Cloud: `tcld namespace search-attributes add`), then launch again",
		strings.Join(names, ", "), doing, err, strings.Join(cmds, " and "))
}
