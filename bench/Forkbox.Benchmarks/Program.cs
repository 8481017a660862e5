using BenchmarkDotNet.Running;

namespace Forkbox.Benchmarks;

/// <summary>
/// `dotnet run -c Release --project bench/Forkbox.Benchmarks [-- BenchmarkDotNet arguments]` runs
/// the benchmarks (all of them without arguments); `-- --check-budgets [FILE]` runs them with a
/// short job and compares their allocations with the budgets (bench/allocation-budgets.json by default).
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        if (args.Length > 0 && args[0] == "--check-budgets")
            return BudgetCheck.Run(args.Length > 1 ? args[1] : AllocationBudgets.DefaultPath());
        // No summary: the arguments were refused (BenchmarkDotNet has printed why) or matched no benchmark.
        var summaries = BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args.Length == 0 ? ["--filter", "*"] : args);
        return summaries.Any() ? 0 : 1;
    }
}
