from td_generator.core.enterprise.automation_systems import AutomationSystems, ProcessType, ScheduleType
import asyncio

# Initialize automation
automation = AutomationSystems()

# Create automation task
async def create_task():
    task = await automation.create_task(
        name="Daily Backup",
        type=ProcessType.MAINTENANCE,
        schedule=ScheduleType.DAILY,
        schedule_config={
            "hour": 2,
            "minute": 0
        },
        actions=[
            {
                "type": "backup",
                "params": {
                    "target": "database",
                    "retention": "7days"
                }
            },
            {
                "type": "cleanup",
                "params": {
                    "older_than": "30days"
                }
            }
        ],
        resources={
            "cpu": 20.0,
            "memory": 30.0,
            "storage": 50.0
        }
    )
    print(f"Task created: {task.id}")

asyncio.run(create_task())

# Start automation scheduler
automation.start()

# Get task statistics
stats = automation.get_task_stats()
print(f"Task stats: {stats}")

# Get execution statistics
exec_stats = automation.get_execution_stats()
print(f"Execution stats: {exec_stats}")
