"""The built-in control commands that query the index or another archive
(manual appendix 6: database options).

Only instances live here; ``getPlugins(IControlCommand, plugins)`` finds
them as it finds installed ones.
"""

from pacscore.control import finders, queries

query = queries.Query()
query2 = queries.Query2()
addRecord = queries.AddRecord()
deleteRecord = queries.DeleteRecord()

patientFinder = finders.patientFinder()
studyFinder = finders.studyFinder()
seriesFinder = finders.seriesFinder()
imageFinder = finders.imageFinder()
seriesLister = finders.SeriesLister()
imageLister = finders.ImageLister()
imageFileLister = finders.ImageFileLister()
