using System.Globalization;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Engines;
using BenchmarkDotNet.Exporters;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Loggers;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;
using BenchmarkDotNet.Validators;

namespace Forkbox.Benchmarks;

/// <summary>
/// `--check-budgets`: runs every benchmark once with a short job, in this process (no project to
/// generate and build), and compares its bytes allocated per operation with its budget. Prints one
/// row per benchmark; exits 1 if one is over its budget, did not run, or has no budget.
/// </summary>
internal static class BudgetCheck
{
    // Allocations do not need a stable mean, only enough operations that one-time costs (a pooled
    // segment, a socket's first async read) vanish in the average: a fixed count, no pilot stage.
    private static Job ShortJob() => new Job("budgets")
        .WithToolchain(InProcessEmitToolchain.Instance)
        .WithStrategy(RunStrategy.Monitoring)
        .WithLaunchCount(1)
        .WithWarmupCount(1)
        .WithIterationCount(2)
        .WithInvocationCount(4096)
        .WithUnrollFactor(1);

    public static int Run(string budgetsPath)
    {
        var budgets = AllocationBudgets.Load(budgetsPath).Budgets;
        var artifacts = Directory.CreateTempSubdirectory("forkbox-bench-");
        try
        {
            var config = ManualConfig.CreateEmpty()
                .AddJob(ShortJob())
                .AddDiagnoser(MemoryDiagnoser.Default)
                .AddColumnProvider(DefaultColumnProviders.Instance)
                .AddExporter(MarkdownExporter.GitHub)
                .AddLogger(new ErrorLogger())
                .AddValidator(JitOptimizationsValidator.FailOnError, ExecutionValidator.FailOnError)
                .WithArtifactsPath(artifacts.FullName)
                .WithOptions(ConfigOptions.DisableLogFile);
            var summaries = BenchmarkRunner.Run(typeof(Program).Assembly, config);
            foreach (var error in summaries.SelectMany(s => s.ValidationErrors).Where(e => e.IsCritical))
                Console.Error.WriteLine($"check-budgets: {error.Message}");
            var reports = summaries.SelectMany(s => s.Reports).ToDictionary(r => Name(r.BenchmarkCase), StringComparer.Ordinal);

            var failed = 0;
            var width = budgets.Keys.Concat(reports.Keys).Max(k => k.Length);
            Console.WriteLine($"{"benchmark".PadRight(width)} {"allocated",12} {"budget",12}  {"mean (rough)",12}  verdict");
            foreach (var name in budgets.Keys.Union(reports.Keys).Order(StringComparer.Ordinal))
            {
                long? allocated = null;
                string mean = "";
                if (reports.TryGetValue(name, out var report) && report.Success)
                {
                    allocated = report.GcStats.GetBytesAllocatedPerOperation(report.BenchmarkCase);
                    if (report.ResultStatistics is { } stats) mean = string.Create(CultureInfo.InvariantCulture, $"{stats.Mean / 1000:F3} µs");
                }
                var hasBudget = budgets.TryGetValue(name, out var budget);
                var verdict = allocated is null ? "DID NOT RUN"
                    : !hasBudget ? "NO BUDGET"
                    : allocated > budget ? "OVER"
                    : "ok";
                if (verdict != "ok") failed++;
                Console.WriteLine($"{name.PadRight(width)} {Bytes(allocated),12} {(hasBudget ? Bytes(budget) : "-"),12}  {mean,12}  {verdict}");
            }
            Console.WriteLine(failed == 0
                ? $"check-budgets: {reports.Count} benchmarks within their budgets ({budgetsPath})"
                : $"check-budgets: {failed} of {budgets.Keys.Union(reports.Keys).Count()} benchmarks over budget, not run or without a budget ({budgetsPath})");
            return failed == 0 ? 0 : 1;
        }
        finally
        {
            artifacts.Delete(recursive: true);
        }
    }

    /// <summary>A benchmark's key in the budgets file: its class and method.</summary>
    public static string Name(BenchmarkCase c) => $"{c.Descriptor.Type.Name}.{c.Descriptor.WorkloadMethod.Name}";

    private static string Bytes(long? b) => b is { } v ? v.ToString("N0", CultureInfo.InvariantCulture) + " B" : "-";

    /// <summary>BenchmarkDotNet's own log, errors only: the table above says the rest.</summary>
    private sealed class ErrorLogger : ILogger
    {
        public string Id => nameof(ErrorLogger);
        public int Priority => 0;
        public void Write(LogKind logKind, string text)
        {
            if (logKind == LogKind.Error) Console.Error.Write(text);
        }
        public void WriteLine() { }
        public void WriteLine(LogKind logKind, string text)
        {
            if (logKind == LogKind.Error) Console.Error.WriteLine(text);
        }
        public void Flush() => Console.Error.Flush();
    }
}
