// Package gpu reports a host's NVIDIA GPUs through NVML, the library that ships with the
// driver (github.com/NVIDIA/go-nvml loads it at run time, so herd builds and runs on hosts
// without one). Workers report their devices when they reserve a rank, and `herd gpus`
// prints them.
package gpu

import (
	"errors"
	"fmt"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// ErrNoDriver means NVML could not be loaded: no NVIDIA driver is installed on this host.
var ErrNoDriver = errors.New("no NVIDIA driver is present on this host (libnvidia-ml.so not found)")

// Device is one GPU's identity and health at the moment it was read.
type Device struct {
	Index       int    `json:"index"`
	UUID        string `json:"uuid"`
	Name        string `json:"name"`
	MemoryUsed  uint64 `json:"memory_used"`  // bytes
	MemoryTotal uint64 `json:"memory_total"` // bytes
	Utilization int    `json:"utilization"`  // percent of time a kernel ran over the last sample period; -1 = not reported
	Temperature int    `json:"temperature"`  // °C at the die; -1 = not reported
	// ECC errors since the driver was loaded (volatile counters); -1 where the device
	// has no ECC or it is disabled. Uncorrected errors mean results may be wrong.
	ECCCorrected   int64 `json:"ecc_corrected"`
	ECCUncorrected int64 `json:"ecc_uncorrected"`
}

// Host is what NVML reports for this host.
type Host struct {
	Driver  string   `json:"driver"`
	Devices []Device `json:"devices"`
}

// List reads every GPU. It returns ErrNoDriver when NVML is absent, so callers can tell
// "no GPU here" from a failing driver.
func List() (Host, error) {
	if ret := nvml.Init(); ret != nvml.SUCCESS {
		if ret == nvml.ERROR_LIBRARY_NOT_FOUND || ret == nvml.ERROR_DRIVER_NOT_LOADED {
			return Host{}, ErrNoDriver
		}
		return Host{}, fmt.Errorf("gpu: initialising NVML: %v", ret)
	}
	defer nvml.Shutdown()

	var h Host
	var ret nvml.Return
	if h.Driver, ret = nvml.SystemGetDriverVersion(); ret != nvml.SUCCESS {
		return Host{}, fmt.Errorf("gpu: driver version: %v", ret)
	}
	n, ret := nvml.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return Host{}, fmt.Errorf("gpu: counting devices: %v", ret)
	}
	for i := range n {
		d, err := read(i)
		if err != nil {
			return Host{}, err
		}
		h.Devices = append(h.Devices, d)
	}
	return h, nil
}

// read queries device i. Identity and memory must be readable; utilisation, temperature
// and ECC are optional on some boards (and absent under MIG), so they read as -1 there.
func read(i int) (Device, error) {
	dev, ret := nvml.DeviceGetHandleByIndex(i)
	if ret != nvml.SUCCESS {
		return Device{}, fmt.Errorf("gpu: device %d: %v", i, ret)
	}
	d := Device{Index: i, Utilization: -1, Temperature: -1, ECCCorrected: -1, ECCUncorrected: -1}
	if d.Name, ret = dev.GetName(); ret != nvml.SUCCESS {
		return Device{}, fmt.Errorf("gpu: device %d name: %v", i, ret)
	}
	if d.UUID, ret = dev.GetUUID(); ret != nvml.SUCCESS {
		return Device{}, fmt.Errorf("gpu: device %d uuid: %v", i, ret)
	}
	mem, ret := dev.GetMemoryInfo()
	if ret != nvml.SUCCESS {
		return Device{}, fmt.Errorf("gpu: device %d memory: %v", i, ret)
	}
	d.MemoryUsed, d.MemoryTotal = mem.Used, mem.Total
	if u, ret := dev.GetUtilizationRates(); ret == nvml.SUCCESS {
		d.Utilization = int(u.Gpu)
	}
	if t, ret := dev.GetTemperature(nvml.TEMPERATURE_GPU); ret == nvml.SUCCESS {
		d.Temperature = int(t)
	}
	if c, ret := dev.GetTotalEccErrors(nvml.MEMORY_ERROR_TYPE_CORRECTED, nvml.VOLATILE_ECC); ret == nvml.SUCCESS {
		d.ECCCorrected = int64(c)
	}
	if u, ret := dev.GetTotalEccErrors(nvml.MEMORY_ERROR_TYPE_UNCORRECTED, nvml.VOLATILE_ECC); ret == nvml.SUCCESS {
		d.ECCUncorrected = int64(u)
	}
	return d, nil
}
