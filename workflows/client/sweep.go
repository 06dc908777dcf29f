package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	sdkclient "go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/workflows"
)

// SubmitSweep starts the sweep in.Name, or attaches to it when it is running or has
// completed (workflow ID = sweep name: launching twice never runs a trial twice).
func SubmitSweep(ctx context.Context, c sdkclient.Client, queue string, in workflows.SweepInput) (attached bool, err error) {
	d, err := c.DescribeWorkflowExecution(ctx, in.Name, "")
	switch d.GetWorkflowExecutionInfo().GetStatus() {
	case enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED:
		if d.GetWorkflowExecutionInfo().GetType().GetName() != workflows.SweepWorkflow {
			return false, usererr.New("sweep "+in.Name, "a run of this name exists; give the sweep another name")
		}
		return true, nil
	}
	var nf *serviceerror.NotFound
	if err != nil && !errors.As(err, &nf) {
		return false, fmt.Errorf("looking up sweep %s: %w", in.Name, err)
	}
	_, err = c.ExecuteWorkflow(ctx, sdkclient.StartWorkflowOptions{
		ID:                       in.Name,
		TaskQueue:                queue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
	}, workflows.SweepWorkflow, in)
	if err != nil {
		return false, fmt.Errorf("starting sweep %s: %w", in.Name, err)
	}
	return false, nil
}

// GetSweep reads a sweep's progress from its memo, so it works with no worker running.
func GetSweep(ctx context.Context, c sdkclient.Client, name string) (workflows.SweepProgress, error) {
	d, err := c.DescribeWorkflowExecution(ctx, name, "")
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) || (err == nil && d.GetWorkflowExecutionInfo().GetType().GetName() != workflows.SweepWorkflow) {
		return workflows.SweepProgress{}, usererr.New("sweep "+name, "no such sweep; `herd sweep SWEEP.yaml` starts one")
	}
	if err != nil {
		return workflows.SweepProgress{}, fmt.Errorf("describing sweep %s: %w", name, err)
	}
	var p workflows.SweepProgress
	if m, ok := d.GetWorkflowExecutionInfo().GetMemo().GetFields()[workflows.MemoProgress]; ok {
		if err := converter.GetDefaultDataConverter().FromPayload(m, &p); err != nil {
			return workflows.SweepProgress{}, fmt.Errorf("sweep %s: decoding its progress: %w", name, err)
		}
	}
	return p, nil
}

// FollowSweep calls show with the sweep's progress every interval until it ends, then
// returns its result.
func FollowSweep(ctx context.Context, c sdkclient.Client, name string, every time.Duration, show func(workflows.SweepProgress)) (workflows.SweepProgress, error) {
	return awaitResult[workflows.SweepProgress](ctx, c, name, every, GetSweep, show, nil)
}
