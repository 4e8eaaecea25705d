from workers import DurableObject, Response, WorkerEntrypoint


class Ledger(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS runs (cron TEXT, scheduled_time REAL)")

    async def record(self, cron, scheduled_time):
        self.ctx.storage.sql.exec("INSERT INTO runs VALUES (?, ?)", cron, scheduled_time)

    async def runs(self):
        rows = self.ctx.storage.sql.exec("SELECT cron, scheduled_time FROM runs ORDER BY rowid")
        return [[row.cron, row.scheduled_time] for row in rows]


class Default(WorkerEntrypoint):
    # Runs on the schedules in "triggers" in the wrangler file.
    async def scheduled(self, controller, env, ctx):
        print(f"Scheduled task {controller.cron} has been executed.")
        await env.LEDGER.getByName("runs").record(controller.cron, controller.scheduledTime)

    async def fetch(self):
        return Response.json(await self.env.LEDGER.getByName("runs").runs())
